"""The safety operating point over several splits: holdout false_edible, accuracy and threshold.

For each seed, a stratified 80/20 split of the real dataset (the same procedure as `mushroom train`'s
persisted split, drawn with that seed, rows in dataset order: seed 42 reproduces `mushroom train`). Each configuration is fitted with ``mushroom_lib.model.fit``: the
threshold is chosen on out-of-fold probabilities of the training part only, then the whole pipeline
(encoder -> StandardScaler -> PCA(3) -> classifier) is refitted on the training part and scored once on
the holdout. ``@0.5`` columns show the same fitted model at the plain 0.5 threshold for comparison.

Not a test (nothing is asserted); the numbers go into the closing note. Runnable alone:
``.venv/bin/python benchmarks/safety_sweep.py [--seeds 42 1 7 3 11 2024] [--configs default ...] [--json]``.
Needs the real dataset (MUSHROOM_DATA or ../shared/data/mushrooms.csv). A few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from mushroom_lib import model as M  # noqa: E402
from mushroom_lib.schema import FEATURES, TARGET, validate_frame  # noqa: E402

CONFIGS: dict[str, dict] = {
    "default": {},  # ModelConfig() as shipped: target encoding + KNN(10, distance)
    "target+extra_trees": {"encoder": "target", "classifier": "extra_trees"},
    "onehot+knn": {"encoder": "onehot", "classifier": "knn"},
    "onehot+extra_trees": {"encoder": "onehot", "classifier": "extra_trees"},
    "onehot+random_forest": {"encoder": "onehot", "classifier": "random_forest", "n_estimators": 200},
    "ordinal+knn": {"encoder": "ordinal", "classifier": "knn"},
    "ordinal+extra_trees": {"encoder": "ordinal", "classifier": "extra_trees"},
}


def dataset() -> pd.DataFrame:
    """The real dataset (class + 22 features), validated."""
    for cand in (os.environ.get("MUSHROOM_DATA"), ROOT.parent / "shared" / "data" / "mushrooms.csv"):
        if cand and Path(cand).is_file():
            df = pd.read_csv(cand, dtype=str, keep_default_na=False)
            checked = validate_frame(df, require_label=True)
            out = checked.features.copy()
            out.insert(0, TARGET, checked.labels.to_numpy())
            return out
    raise SystemExit("the real dataset is missing: set MUSHROOM_DATA to mushrooms.csv")


def one(df: pd.DataFrame, seed: int, name: str, overrides: dict, test_size: float = 0.2) -> dict:
    """Fit one configuration on one split and measure it on the holdout."""
    train, hold = train_test_split(df, test_size=test_size, stratify=df[TARGET], random_state=seed)
    train, hold = train.sort_index(), hold.sort_index()  # dataset order, as make_split persists it
    cfg = M.ModelConfig(seed=seed, **overrides)
    start = time.perf_counter()
    trained = M.fit(train[FEATURES], train[TARGET], cfg)
    seconds = time.perf_counter() - start
    p = M.p_poisonous(trained.pipeline, hold)
    at_t = M.metrics(p, hold[TARGET].to_numpy(), trained.threshold)
    at_half = M.metrics(p, hold[TARGET].to_numpy(), 0.5)
    return {
        "config": name, "seed": seed, "threshold": trained.threshold,
        "false_edible": at_t["false_edible"], "accuracy": at_t["accuracy"],
        "false_poisonous": at_t["false_poisonous"], "poisonous_in_holdout": int((hold[TARGET] == "p").sum()),
        "oof_false_edible": trained.oof_metrics["false_edible"], "oof_accuracy": trained.oof_metrics["accuracy"],
        "false_edible@0.5": at_half["false_edible"], "accuracy@0.5": at_half["accuracy"],
        "fit_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 7, 3, 11, 2024])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--json", action="store_true", help="print the rows as JSON lines instead of a table")
    args = ap.parse_args(argv)
    df = dataset()
    rows = []
    head = (f"{'config':22} {'seed':>5} {'thresh':>7} {'FE':>3} {'acc':>7} {'FP':>3} | "
            f"{'FE@0.5':>6} {'acc@0.5':>7} | {'oofFE':>5} {'oofAcc':>7} {'fit s':>6}")
    if not args.json:
        print(head)
        print("-" * len(head))
    for name in args.configs:
        for seed in args.seeds:
            r = one(df, seed, name, CONFIGS[name])
            rows.append(r)
            if args.json:
                print(json.dumps(r), flush=True)
            else:
                print(f"{name:22} {seed:5d} {r['threshold']:7.4f} {r['false_edible']:3d} {r['accuracy']:7.4f} "
                      f"{r['false_poisonous']:3d} | {r['false_edible@0.5']:6d} {r['accuracy@0.5']:7.4f} | "
                      f"{r['oof_false_edible']:5d} {r['oof_accuracy']:7.4f} {r['fit_seconds']:6.1f}", flush=True)
    if not args.json:
        print("\nsummary over seeds (holdout, at the chosen threshold):")
        for name in args.configs:
            mine = [r for r in rows if r["config"] == name]
            fe = [r["false_edible"] for r in mine]
            acc = [r["accuracy"] for r in mine]
            print(f"  {name:22} false_edible total {sum(fe):3d} (per seed {fe}), max {max(fe)}; "
                  f"accuracy min {min(acc):.4f} median {statistics.median(acc):.4f}; "
                  f"accuracy >= 0.97 on {sum(a >= 0.97 for a in acc)}/{len(acc)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
