"""`mushroom report` cold time beside a bare Evidently script doing the same report, in the same run.

Both start a fresh Python process on the same home (8124 reference rows + 1000 production rows submitted
through ModelService.submit_feedback): ours runs notebooks/report.ipynb through papermill, the bare
script reads ref_data.csv / prod_data.csv, loads the champion with skops for the production rows' PCA,
builds the same metrics (drift on the 22 features + PCA, classification quality with probabilities,
false_edible), writes the HTML and adds the snapshot to a workspace project found by name. Runs
alternate (bare, ours, bare, ours, ...) so machine load hits both alike; the medians are compared.

``run() -> list[dict(figure, naive, ours, ratio, goal)]`` for benchmarks/run_all.py; runnable alone:
``.venv/bin/python benchmarks/bench_report.py [--repeat N]``. Needs the real dataset (MUSHROOM_DATA or
../shared/data/mushrooms.csv).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import dataset_path, trained_home  # noqa: E402

PROD_ROWS = 1000
GOAL = 1.5

#: The bare script: what someone would write with Evidently alone for the same report.
BARE_SCRIPT = r'''
import json, sys
from pathlib import Path
import pandas as pd
import skops.io as sio
from evidently import BinaryClassification, DataDefinition, Dataset, Report
from evidently.metrics import SumValue
from evidently.presets import ClassificationPreset, DataDriftPreset
from evidently.ui.workspace import Workspace

home = Path(sys.argv[1])
version = json.loads((home / "artifacts/champion.json").read_text())["version"]
meta = json.loads((home / f"artifacts/models/{version}/metadata.json").read_text())
model = home / f"artifacts/models/{version}/model.skops"
pipeline = sio.load(model, trusted=sio.get_untrusted_types(file=model))
ref = pd.read_csv(home / "data/ref_data.csv", keep_default_na=False)
prod = pd.read_csv(home / "data/prod_data.csv", keep_default_na=False)
features = list(ref.columns[:22])
pca = [c for c in ref.columns if c.startswith("pca_")]
prod[pca] = pipeline[:-1].transform(prod[features])
for df in (ref, prod):
    df["false_edible"] = ((df["target"] == "poisonous") & (df["prediction"] == "edible")).astype(int)
definition = DataDefinition(
    categorical_columns=features, numerical_columns=pca + ["p_poisonous", "false_edible"],
    classification=[BinaryClassification(target="target", prediction_labels="prediction",
                                         prediction_probas="p_poisonous", pos_label="poisonous")])
report = Report([DataDriftPreset(columns=features + pca),
                 ClassificationPreset(probas_threshold=meta["threshold"]),
                 SumValue(column="false_edible")], include_tests=True)
snapshot = report.run(Dataset.from_pandas(prod, data_definition=definition),
                      Dataset.from_pandas(ref, data_definition=definition))
snapshot.save_html(str(home / "reports/bare-monitoring.html"))
ws = Workspace(str(home / "reports/bare-workspace"))
found = ws.search_project("Mushroom monitoring")
project = found[0] if found else ws.create_project("Mushroom monitoring")
ws.add_run(project.id, snapshot)
'''


def make_home(base: Path, data: Path, rows: int = PROD_ROWS) -> Path:
    """A home with the real data, v0001 trained and ``rows`` production rows submitted as feedback."""
    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.data.dataset import load_dataset
    from mushroom_lib.service import ModelService

    home = trained_home(base, data)
    settings = get_settings(home, report_on_promote=False, k=10**9)  # no retrain while filling prod_data
    service = ModelService(settings=settings)
    service.submit_feedback(load_dataset(settings).sample(rows, random_state=7), source="bench")
    (home / "reports").mkdir(parents=True, exist_ok=True)
    return home


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MUSHROOM_HOME", "PYTHONWARNINGS")}
    env.update(DO_NOT_TRACK="1", MUSHROOM_REPORT_ON_PROMOTE="0")
    return env


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and the children it waited for, e.g. the kernel)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(home: Path, repeat: int = 3) -> dict:
    """Alternating cold runs; returns the medians, the HTML sizes and every sample."""
    script = home.parent / "bare_report.py"
    script.write_text(BARE_SCRIPT)
    bare_cmd = [sys.executable, str(script), str(home)]
    ours_cmd = [sys.executable, "-m", "mushroom_lib.cli", "--home", str(home), "report", "--quiet"]
    bare, ours = [], []
    for _ in range(repeat):
        bare.append(_timed(bare_cmd))
        ours.append(_timed(ours_cmd))
    html = sorted((home / "reports").glob("*-monitoring.html"))
    return {"bare": statistics.median(w for w, _ in bare), "ours": statistics.median(w for w, _ in ours),
            "bare_cpu": statistics.median(c for _, c in bare), "ours_cpu": statistics.median(c for _, c in ours),
            "bare_samples": [round(w, 2) for w, _ in bare], "ours_samples": [round(w, 2) for w, _ in ours],
            "bare_html_mb": (home / "reports/bare-monitoring.html").stat().st_size / 1e6,
            "ours_html_mb": html[-1].stat().st_size / 1e6 if html else float("nan")}


def run(repeat: int = 5) -> list[dict]:
    """Figures for benchmarks/run_all.py: cold `mushroom report` vs the bare script, and HTML size."""
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        home = make_home(Path(tmp), dataset_path("bench_report"))
        m = measure(home, repeat)
    return [
        {"figure": f"mushroom report cold, 8124 reference + {PROD_ROWS} production rows (s, median of {repeat})",
         "naive": round(m["bare"], 2), "ours": round(m["ours"], 2), "ratio": round(m["ours"] / m["bare"], 2),
         "goal": f"<= {GOAL}x the bare Evidently script"},
        {"figure": f"mushroom report cold, CPU seconds of all its processes (median of {repeat}; "
                   "less sensitive to other load)",
         "naive": round(m["bare_cpu"], 2), "ours": round(m["ours_cpu"], 2),
         "ratio": round(m["ours_cpu"] / m["bare_cpu"], 2), "goal": "information"},
        {"figure": "report HTML size (MB)", "naive": round(m["bare_html_mb"], 2), "ours": round(m["ours_html_mb"], 2),
         "ratio": round(m["ours_html_mb"] / m["bare_html_mb"], 2), "goal": "about the bare script's"},
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="alternating cold runs of each (default 5)")
    args = parser.parse_args()
    for row in run(args.repeat):
        print(f"{row['figure']}: bare {row['naive']}  ours {row['ours']}  ratio {row['ratio']}  "
              f"(goal {row['goal']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
