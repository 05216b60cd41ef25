"""Speed of the scoring paths (issue 6): P1 a 1M-row `mushroom predict`, P2 one-row latency, P3 K=10 retrain.

Every figure is measured in the same run as its naive anchor:

* **P1** `mushroom predict IN.csv -o OUT.csv` on 1,000,000 rows resampled from the real data (built in a
  temporary folder at benchmark time, never kept), as a whole command: a fresh process, interpreter start,
  imports, the scorer's load, reading, validation, scoring and writing, on a copy of the home exactly as
  `mushroom train` left it (the first run after training; the headline, >= 20x) and again on a home that ran
  before (later runs). Naive anchor (median over runs, same run): ``pandas.read_csv`` + a fitted scikit-learn
  Pipeline (OneHotEncoder -> StandardScaler -> PCA(3) -> RandomForest(100)) + ``to_csv``, timed inside its
  process after the fit (so the anchor gets imports and fitting for free). Peak RSS of each process comes
  from ``wait4``. The stage breakdown: start-up + imports (a process importing what the command imports)
  and ``predict_file(stages=...)`` in a process of its own. The load average (1 min) is printed with the
  headline: other work on the machine slows every figure. The answers are checked: our labels must equal
  the champion Pipeline's plus the known-set rules on all 1M rows and p_poisonous must agree within 1e-9.
* **P2** ``ModelService.predict`` of one row, a dict and a one-row DataFrame, p50/p99 over the 8124
  distinct dataset rows (cold: every row is new to the scorer's cache), and again warm. Naive anchor: the
  same one-row DataFrame through the naive Pipeline's ``predict_proba``.
* **P3** ``ModelService.submit_feedback`` of K=10 labelled rows that triggers the retrain, gate, register,
  promote and swap (wall time of the call), while another thread predicts one row after another; the
  longest single prediction during the call is reported. Anchor for the latency: the same, with the
  predicting thread calling the champion Pipeline's ``predict_proba`` directly.

``run() -> list[dict(figure, naive, ours, ratio, goal)]`` for benchmarks/run_all.py; runnable alone:
``.venv/bin/python benchmarks/bench_speed.py [--rows 1000000] [--repeat 3]``. Needs the real dataset
(MUSHROOM_DATA or ../shared/data/mushrooms.csv). A few minutes on 2 cores (mostly the naive anchor).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import dataset_path, trained_home  # noqa: E402

MIB = 1024 ** 2

NAIVE_SCRIPT = r'''
import json, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
data, inp, out = sys.argv[1:4]
train = pd.read_csv(data)
features = [c for c in train.columns if c != "class"]
pipe = Pipeline([("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)), ("scale", StandardScaler()),
                 ("pca", PCA(3, random_state=0)), ("classify", RandomForestClassifier(100, random_state=0))])
pipe.fit(train[features], train["class"] == "p")
t0 = time.perf_counter()
df = pd.read_csv(inp)
t1 = time.perf_counter()
Z = pipe[:-1].transform(df[features])
t2 = time.perf_counter()
p = pipe[-1].predict_proba(Z)[:, 1]
t3 = time.perf_counter()
df["prediction"] = np.where(p >= 0.5, "poisonous", "edible")
df["p_poisonous"] = p
df.to_csv(out, index=False)
t4 = time.perf_counter()
print(json.dumps({"seconds": t4 - t0, "read": t1 - t0, "transform": t2 - t1, "predict": t3 - t2,
                  "write": t4 - t3}))
'''

#: ours, timed over the same scope as the anchor (imports before the clock; the model is loaded inside it), with
#: the seconds per stage that predict_file reports
OURS_SCRIPT = r'''
import json, sys, time, warnings
warnings.simplefilter("ignore")
import skops.io
from mushroom_lib.batch.predict import predict_file
from mushroom_lib.core.settings import get_settings
home, inp, out = sys.argv[1:4]
stages = {}
t0 = time.perf_counter()
predict_file(get_settings(home), inp, out, stages=stages)
print(json.dumps({"seconds": time.perf_counter() - t0, "stages": stages}))
'''

#: what the command imports before it reads a byte (interpreter start included in the wall time)
STARTUP_SCRIPT = "import mushroom_lib.cli.commands, mushroom_lib.batch.predict"


# ---------------------------------------------------------------- helpers
def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("MUSHROOM_HOME",)}
    e.update(DO_NOT_TRACK="1", MUSHROOM_REPORT_ON_PROMOTE="0", PYTHONWARNINGS="ignore")
    return e


#: Runs a command and writes its peak RSS. A child's ru_maxrss on Linux starts from the RSS of the process
#: that spawned it (exec keeps the old address space's high-water mark), so the command is started by this
#: small launcher instead of by the benchmark process, whose own RSS would otherwise show up.
RSS_LAUNCHER = r'''
import json, os, subprocess, sys
out = sys.argv[1]
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(out, "w") as fh:
    json.dump({"code": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss * 1024}, fh)
'''


def run_process_rss(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in bytes (of the command alone, see RSS_LAUNCHER) and stdout of a command."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rss.json"
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-S", "-c", RSS_LAUNCHER, str(report), *cmd], capture_output=True,
                             env=env())
        wall = time.perf_counter() - t
        info = json.loads(report.read_text()) if report.exists() else {"code": res.returncode, "maxrss": 0}
    if res.returncode or info["code"]:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))}... failed ({info['code']}): {res.stderr.decode()[-2000:]}")
    return wall, info["maxrss"], res.stdout.decode()


def resample(data: Path, rows: int, out: Path, seed: int = 0) -> Path:
    """``rows`` rows drawn with replacement from the real data (header layout, class kept)."""
    import numpy as np
    import pandas as pd

    df = pd.read_csv(data, dtype=str, keep_default_na=False)
    pick = np.random.default_rng(seed).integers(0, len(df), rows)
    df.iloc[pick].to_csv(out, index=False, lineterminator="\n")
    return out


def _pct(values, q):
    import numpy as np

    return float(np.percentile(values, q))


# ---------------------------------------------------------------- P1
def check_answers(home: Path, inp: Path, out: Path) -> dict:
    """Our output vs the champion Pipeline on every row: label mismatches and the largest p difference."""
    import numpy as np
    import pandas as pd

    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.data.schema import FEATURES
    from mushroom_lib.model import pipeline as M
    from mushroom_lib.registry.versions import Registry

    reg = Registry(get_settings(home))
    loaded = reg.load(reg.champion())
    X = pd.read_csv(inp, dtype=str, keep_default_na=False, usecols=FEATURES)
    p_pipe = M.p_poisonous(loaded.pipeline, X)
    del X
    got = pd.read_csv(out, usecols=["prediction", "p_poisonous"], dtype={"prediction": str, "p_poisonous": float})
    want = M.label_words(pipeline_plus_rules(loaded, inp, p_pipe))
    return {"rows": len(got), "label_mismatches": int((got["prediction"].to_numpy() != want).sum()),
            "max_p_diff": float(np.abs(got["p_poisonous"].to_numpy() - p_pipe).max())}


def pipeline_plus_rules(loaded, inp: Path, p_pipe):
    """0/1 calls of the Pipeline's p plus the safety rules (``model.rules``), on the encoder's own seen codes."""
    import numpy as np
    import pandas as pd

    from mushroom_lib.data.schema import FEATURES
    from mushroom_lib.model import pipeline as M
    from mushroom_lib.model import rules, threshold
    from mushroom_lib.scoring.scorer import feature_codes, row_keys

    codes = feature_codes(pd.read_csv(inp, dtype=str, keep_default_na=False, usecols=FEATURES)[FEATURES])
    _, first, inverse = np.unique(row_keys(codes), return_index=True, return_inverse=True)
    distinct = codes[first]
    seen = threshold.seen_table(M.seen_codes(loaded.pipeline))
    called = rules.decide(p_pipe[first], loaded.threshold, rules.evidence(loaded.known, seen, distinct)).called
    return np.asarray(called)[inverse.ravel()]


def bench_p1(folder: Path, home: Path, data: Path, rows: int, repeat: int) -> dict:
    """The command on a home right after `mushroom train` (a fresh copy each run), later runs, the anchor."""
    import shutil

    pristine = folder / "after-train"
    shutil.copytree(home, pristine)  # the home exactly as `mushroom train` left it
    inp = resample(data, rows, folder / "in.csv")

    def command(h: Path, src: Path, out: Path) -> list[str]:
        return [sys.executable, "-m", "mushroom_lib.cli", "--home", str(h), "predict", str(src), "-o", str(out),
                "--max-mb", "100000"]

    naive_cmd = [sys.executable, "-c", NAIVE_SCRIPT, str(data), str(inp), str(folder / "naive.csv")]
    ours_inproc = [sys.executable, "-c", OURS_SCRIPT, str(home), str(inp), str(folder / "ours2.csv")]
    naive, first, later, inproc, startup = [], [], [], [], []
    load = [os.getloadavg()[0]]
    for i in range(repeat):
        _, rss, text = run_process_rss(naive_cmd)
        naive.append(json.loads(text.strip().splitlines()[-1]) | {"maxrss": rss})
        fresh = folder / f"first-{i}"
        shutil.copytree(pristine, fresh)
        wall, rss, _ = run_process_rss(command(fresh, inp, folder / "ours.csv"))
        first.append({"seconds": wall, "maxrss": rss})
        shutil.rmtree(fresh)
        wall, rss, _ = run_process_rss(command(home, inp, folder / "later.csv"))
        later.append({"seconds": wall, "maxrss": rss})
        _, rss, text = run_process_rss(ours_inproc)
        inproc.append(json.loads(text.strip().splitlines()[-1]) | {"maxrss": rss})
        wall, _, _ = run_process_rss([sys.executable, "-c", STARTUP_SCRIPT])
        startup.append(wall)
        load.append(os.getloadavg()[0])
    (folder / "naive.csv").unlink(missing_ok=True)
    answers = check_answers(home, inp, folder / "ours.csv")
    same = (folder / "ours.csv").read_bytes() == (folder / "ours2.csv").read_bytes() == \
        (folder / "later.csv").read_bytes()
    # memory stays flat: the same command on a file three times larger
    big = folder / "in3.csv"
    with open(big, "wb") as fh:
        for _ in range(3):
            with open(inp, "rb") as src:
                if fh.tell():
                    src.readline()  # one header only
                fh.write(src.read())
    inp.unlink()
    _, rss3, _ = run_process_rss(command(home, big, folder / "ours3.csv"))
    return {"naive": naive, "first": first, "ours": later, "inproc": inproc, "startup": startup,
            "answers": answers, "rss_3x": rss3, "same": same, "load": load}


def stage_breakdown(p1: dict) -> list[tuple[str, float]]:
    """Median seconds per stage of the in-process runs, after the command's start-up and imports."""
    med = statistics.median
    names = ["load scorer", "read+parse", "validate", "distinct", "score", "format", "write", "commit"]
    out = [("start-up + imports (interpreter, mushroom_lib.cli.commands, predict_file)", med(p1["startup"]))]
    for name in names:
        label = {"write": "write (background thread, overlaps the stages above)",
                 "commit": "commit (fsync + rename of OUT)", "distinct": "distinct rows",
                 "score": "distinct-row scoring (incl. safety rules)", "format": "output formatting"}.get(name, name)
        out.append((label, med(r["stages"].get(name, 0.0) for r in p1["inproc"])))
    out.append(("predict_file in-process, whole", med(r["seconds"] for r in p1["inproc"])))
    return out


# ---------------------------------------------------------------- P2
def naive_pipeline(data: Path):
    import pandas as pd
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train = pd.read_csv(data)
    features = [c for c in train.columns if c != "class"]
    pipe = Pipeline([("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                     ("scale", StandardScaler()), ("pca", PCA(3, random_state=0)),
                     ("classify", RandomForestClassifier(100, random_state=0))])
    return pipe.fit(train[features], train["class"] == "p")


def bench_p2(home: Path, data: Path) -> dict:
    import gc

    import pandas as pd

    from mushroom_lib.service import ModelService

    df = pd.read_csv(data, dtype=str, keep_default_na=False).drop(columns="class")
    records = df.to_dict("records")
    frames = [df.iloc[[i]] for i in range(len(df))]
    svc = ModelService(home)
    svc.predict(records[0])  # first call: imports and warm-up

    def timed(fn, items):
        out = []
        gc.collect()
        for item in items:
            t = time.perf_counter()
            fn(item)
            out.append(time.perf_counter() - t)
        return [x * 1000 for x in out]

    res = {}
    for name, items in (("dict", records), ("frame", frames)):
        svc.scorer._cache.clear()
        res[f"{name}_cold"] = timed(svc.predict, items)
        res[f"{name}_warm"] = timed(svc.predict, items)
    pipe = naive_pipeline(data)
    pipe.predict_proba(frames[0])
    res["naive_frame"] = timed(pipe.predict_proba, frames[:1000])
    return {k: {"p50": _pct(v, 50), "p99": _pct(v, 99), "max": max(v), "n": len(v)} for k, v in res.items()}


# ---------------------------------------------------------------- P3
def bench_p3(folder: Path, template: Path, data: Path, repeat: int) -> dict:
    import shutil

    import pandas as pd

    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.registry.versions import Registry
    from mushroom_lib.service import ModelService

    df = pd.read_csv(data, dtype=str, keep_default_na=False)
    records = df.drop(columns="class").to_dict("records")
    frames = [df.drop(columns="class").iloc[[i]] for i in range(200)]
    runs = []
    for i in range(repeat):
        for anchor in (False, True):
            home = folder / f"p3-{i}-{int(anchor)}"
            shutil.copytree(template, home)
            svc = ModelService(home)
            reg = Registry(get_settings(home))
            pipe = reg.load(reg.champion()).pipeline
            svc.predict(records[0])
            pipe.predict_proba(frames[0])
            lat, stop = [], threading.Event()

            swapped: list[float] = []

            def predicting():
                k = 0
                while not stop.is_set():
                    t = time.perf_counter()
                    if anchor:
                        pipe.predict_proba(frames[k % len(frames)])
                    else:
                        out = svc.predict(records[k % len(records)])
                        if not swapped and out["model_version"].iloc[0] != "v0001":
                            swapped.append(time.perf_counter())
                    lat.append(time.perf_counter() - t)
                    k += 1

            feedback = df.sample(10, random_state=100 + i)
            th = threading.Thread(target=predicting, daemon=True)
            th.start()
            time.sleep(0.3)
            before = len(lat)
            t = time.perf_counter()
            receipt = svc.submit_feedback(feedback, wait=True)
            wall = time.perf_counter() - t
            during = lat[before:]
            deadline = time.perf_counter() + 2.0
            while not anchor and receipt.promoted and not swapped and time.perf_counter() < deadline:
                time.sleep(0.001)  # the swap is the call's last step: let the thread see the new model
            stop.set()
            th.join()
            runs.append({"anchor": anchor, "wall": wall, "retrained": receipt.retrained,
                         "to_swap": (swapped[0] - t) if swapped else float("nan"),
                         "promoted": receipt.promoted, "swapped_to": receipt.model_version,
                         "retrain_seconds": receipt.retrain_seconds, "predictions": len(during),
                         "max_ms": max(during) * 1000 if during else float("nan"),
                         "p99_ms": _pct(during, 99) * 1000 if during else float("nan")})
            svc.close()
            shutil.rmtree(home, ignore_errors=True)
    return {"runs": runs}


# ---------------------------------------------------------------- figures
def run(rows: int = 1_000_000, repeat: int = 3) -> list[dict]:
    """Figures for benchmarks/run_all.py."""
    data = dataset_path("bench_speed")
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        folder = Path(tmp)
        home = trained_home(folder, data)
        p1 = bench_p1(folder, home, data, rows, repeat)
        p2 = bench_p2(home, data)
        p3 = bench_p3(folder, home, data, repeat)
    return figures(p1, p2, p3, rows)


def figures(p1: dict, p2: dict, p3: dict, rows: int) -> list[dict]:
    med = statistics.median
    n_wall = med(r["seconds"] for r in p1["naive"])
    f_wall = med(r["seconds"] for r in p1["first"])
    o_wall = med(r["seconds"] for r in p1["ours"])
    n_rss = max(r["maxrss"] for r in p1["naive"])
    o_rss = max(r["maxrss"] for r in p1["ours"] + p1["first"])  # the command (the in-process script imports more)
    a = p1["answers"]
    ours_runs = [r for r in p3["runs"] if not r["anchor"]]
    anchor_runs = [r for r in p3["runs"] if r["anchor"]]
    k = f"{rows // 1000}k" if rows < 1_000_000 else f"{rows / 1e6:g}M"
    i_wall = med(r["seconds"] for r in p1["inproc"])
    load = f"load {min(p1['load']):.1f}-{max(p1['load']):.1f}"
    readers = sorted({r["stages"].get("reader", "?") for r in p1["inproc"]})
    out = [
        {"figure": f"P1 `mushroom predict` {k} rows as a command, the first run after `mushroom train`: interpreter "
                   f"start to the last byte written (median of {len(p1['first'])}; naive: read+transform+predict+"
                   f"write inside its process, median of {len(p1['naive'])}; {load})",
         "naive": round(n_wall, 2), "ours": round(f_wall, 3), "ratio": round(n_wall / f_wall, 1),
         "goal": ">= 20x faster"},
        {"figure": f"P1 `mushroom predict` {k} rows as a command, later runs", "naive": round(n_wall, 2),
         "ours": round(o_wall, 3), "ratio": round(n_wall / o_wall, 1), "goal": "information"},
        {"figure": f"P1 predict {k} rows inside the process (ours: predict_file incl. the scorer's load; reader: "
                   f"{', '.join(readers)})",
         "naive": round(n_wall, 2), "ours": round(i_wall, 3), "ratio": round(n_wall / i_wall, 1),
         "goal": "information"},
    ]
    for label, seconds in stage_breakdown(p1):
        out.append({"figure": f"P1 stage: {label}, s (median)", "naive": None, "ours": round(seconds, 3),
                    "ratio": None, "goal": "information"})
    out += [
        {"figure": f"P1 peak RSS, MiB ({k} rows)", "naive": round(n_rss / MIB), "ours": round(o_rss / MIB),
         "ratio": round(n_rss / o_rss, 1), "goal": "ours <= 512 MiB"},
        {"figure": "P1 peak RSS at 3x the rows, MiB (flat memory)", "naive": None,
         "ours": round(p1["rss_3x"] / MIB), "ratio": None, "goal": "ours <= 512 MiB, ~ the 1x figure"},
        {"figure": f"P1 same answers as the Pipeline + safety rules on {a['rows']} rows (label mismatches / "
                   "max |dp|)",
         "naive": None, "ours": f"{a['label_mismatches']} / {a['max_p_diff']:.1e}"
                                             + ("" if p1["same"] else " (command and library outputs DIFFER)"),
         "ratio": None, "goal": "0 / <= 1e-9"},
    ]
    for shape in ("dict", "frame"):
        cold, warm, nf = p2[f"{shape}_cold"], p2[f"{shape}_warm"], p2["naive_frame"]
        label = "a dict" if shape == "dict" else "a one-row DataFrame"
        out.append({"figure": f"P2 svc.predict({label}) p50 ms (new rows; naive: Pipeline.predict_proba)",
                    "naive": round(nf["p50"], 2), "ours": round(cold["p50"], 3),
                    "ratio": round(nf["p50"] / cold["p50"], 1), "goal": "<= 1 ms"})
        out.append({"figure": f"P2 svc.predict({label}) p99 ms (new rows)", "naive": round(nf["p99"], 2),
                    "ours": round(cold["p99"], 3), "ratio": round(nf["p99"] / cold["p99"], 1), "goal": "<= 5 ms"})
        out.append({"figure": f"P2 svc.predict({label}) p50/p99 ms, rows seen before (row cache)",
                    "naive": None, "ours": f"{warm['p50']:.3f} / {warm['p99']:.3f}", "ratio": None,
                    "goal": "information"})
    walls = [r["wall"] for r in ours_runs]
    to_swap = [r["to_swap"] for r in ours_runs if r["promoted"]]
    out.append({"figure": f"P3 K=10 feedback -> retrain + gate + swap: s until predictions come from the new "
                          f"model, in a fresh home whose worker these rows start (cold: interpreter + training "
                          f"imports; the warm-worker figure is bench_scale's) (median of {len(to_swap)}; promoted "
                          f"{len(to_swap)}/{len(ours_runs)})",
                "naive": None, "ours": round(med(to_swap), 2) if to_swap else None, "ratio": None,
                "goal": "information (<= 1 s is the warm worker's goal)"})
    out.append({"figure": f"P3 the whole submit_feedback call (append, retrain, gate, register, promote, swap, "
                          f"monitoring reference), s (median of {len(walls)})",
                "naive": None, "ours": round(med(walls), 2), "ratio": None, "goal": "information"})
    worst = max(r["max_ms"] for r in ours_runs)
    worst_anchor = max(r["max_ms"] for r in anchor_runs) if anchor_runs else None
    out.append({"figure": "P3 longest single prediction during the retrain, ms (naive: Pipeline.predict_proba "
                          "in the predicting thread)",
                "naive": round(worst_anchor, 1) if worst_anchor else None, "ours": round(worst, 1),
                "ratio": round(worst_anchor / worst, 1) if worst_anchor else None, "goal": "<= 50 ms"})
    return out


def print_table(rows: list[dict], file=sys.stdout) -> None:
    heads = ["figure", "naive", "ours", "ratio", "goal"]
    cells = [[("" if r.get(h) is None else str(r.get(h))) for h in heads] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)]
    widths[0] = min(widths[0], 100)
    line = "  ".join(h.ljust(w) for h, w in zip(heads, widths))
    print(line, file=file)
    print("-" * len(line), file=file)
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)), file=file)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the P1 file (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of P1 (ours) and P3 (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    rows = run(args.rows, args.repeat)
    print_table(rows)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
