"""Safety inside and outside the training data: seeds, random rows, unseen codes, families left out.

* **seeds**: for each seed a stratified 80/20 split of the real dataset (the procedure of `mushroom train`'s
  persisted split; seed 42 reproduces it), fitted as `mushroom train` fits (``training.fit_distinct``:
  distinct rows, threshold chosen out-of-fold on the training part only) and scored once on the holdout,
  by the model alone (``model``) and as a user is answered (``rules``: the known-set rules on top).
* **random rows**: 1,000 rows with every feature drawn from the codes that occur in the data: how many
  are called edible, by the model alone and with the rules.
* **unseen codes**: one cell of every dataset row replaced by a valid code that never occurs in the data.
* **leave-family-out**: each (odor, spore-print-color) family with a poisonous member is removed from the
  data; the rest is split 80/20 and fitted; the family's poisonous members called edible, without and
  with the rules.
* **grouped folds**: ``--folds`` (30) seeded folds, each leaving out a random group of 3 to 6 (odor,
  spore-print-color) families at once (redrawn until the group holds a poisonous family, so every fold
  can show a false edible), the way a region's species are missing from a field guide; the rest is split
  80/20 (seed 1000 + fold), fitted as `mushroom train` fits, and the left-out rows and the rest's holdout
  are scored as a user is answered: false_edible on the left-out rows and on the holdout, the accuracy
  and uncertain share on the holdout, by the model alone and with the rules.

Not a test (the tests assert the headline figures); the numbers go into the closing note. Runnable alone:
``.venv/bin/python benchmarks/safety_sweep.py [--parts seeds random unseen families] [--seeds ...]
[--configs default ...] [--json]``. Needs the real dataset (MUSHROOM_DATA or ../shared/data/mushrooms.csv).
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

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from mushroom_lib.data.schema import CODES, FEATURES, TARGET, validate_frame  # noqa: E402
from mushroom_lib.model import pipeline as M  # noqa: E402
from mushroom_lib.model import rules  # noqa: E402
from mushroom_lib.registry.versions import LoadedModel  # noqa: E402
from mushroom_lib.scoring.scorer import Scorer, feature_codes  # noqa: E402
from mushroom_lib.training.evaluate import evaluate  # noqa: E402
from mushroom_lib.training.train import fit_distinct  # noqa: E402

SEEDS = [42, 1, 7, 3, 11, 2024, 5, 13, 21, 99]

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


def split(df: pd.DataFrame, seed: int, test_size: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, hold = train_test_split(df, test_size=test_size, stratify=df[TARGET], random_state=seed)
    return train.sort_index(), hold.sort_index()  # dataset order, as make_split persists it


def fitted(train: pd.DataFrame, cfg: M.ModelConfig) -> tuple[M.Trained, LoadedModel]:
    """Fit as `mushroom train` does; the model with its known set, ready to score."""
    trained, known, _, _ = fit_distinct(train, train, cfg)
    return trained, LoadedModel("sweep", trained.pipeline, trained.threshold, {}, known)


def one(df: pd.DataFrame, seed: int, name: str, overrides: dict) -> dict:
    """Fit one configuration on one split and measure it on the holdout (model alone and with the rules)."""
    train, hold = split(df, seed)
    cfg = M.ModelConfig(seed=seed, **overrides)
    start = time.perf_counter()
    trained, loaded = fitted(train, cfg)
    seconds = time.perf_counter() - start
    p = M.p_poisonous(trained.pipeline, hold)
    at_t = M.metrics(p, hold[TARGET].to_numpy(), trained.threshold)
    with_rules, counts = evaluate(loaded, hold)
    return {
        "config": name, "seed": seed, "threshold": trained.threshold,
        "false_edible": with_rules["false_edible"], "accuracy": with_rules["accuracy"],
        "false_poisonous": with_rules["false_poisonous"], "uncertain_share": with_rules["uncertain_share"],
        "changed_call": counts["changed_call"], "vetoed_edible": vetoed_edible(loaded, hold),
        "false_edible_model": at_t["false_edible"], "accuracy_model": at_t["accuracy"],
        "oof_false_edible": trained.oof_metrics["false_edible"], "oof_accuracy": trained.oof_metrics["accuracy"],
        "fit_seconds": seconds,
    }


def vetoed_edible(loaded: LoadedModel, rows: pd.DataFrame) -> dict:
    """Edible rows a rule of this round calls poisonous (matched, whatever the model votes): its cost."""
    _, ev, _ = Scorer(loaded).explain(feature_codes(rows[FEATURES]))
    edible = (rows[TARGET] == "e").to_numpy()
    return {"pure_poisonous_code": int((edible & (ev.pure >= 0)).sum()),
            "nearest_known_poisonous": int((edible & (ev.near_poisonous != rules.NO_NEAR)).sum())}


def called_edible(loaded: LoadedModel, rows: pd.DataFrame) -> tuple[int, int]:
    """(rows the model alone calls edible, rows called edible with the rules)."""
    scored = Scorer(loaded).score(rows[FEATURES].reset_index(drop=True))
    model_only = int((M.decide(scored["p_poisonous"].to_numpy(), loaded.threshold) == 0).sum())
    return model_only, int((scored["prediction"] == "edible").sum())


def random_rows(df: pd.DataFrame, loaded: LoadedModel, n: int = 1000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({f: rng.choice(sorted(set(df[f])), n) for f in FEATURES})
    model_only, with_rules = called_edible(loaded, rows)
    near = Scorer(loaded).score(rows)["nearest_known"]
    return {"part": "random", "rows": n, "edible_model": model_only, "edible_rules": with_rules,
            "nearest_known_min": int(near.min())}


def unseen_codes(df: pd.DataFrame, loaded: LoadedModel) -> list[dict]:
    out = []
    for f in FEATURES:
        for code in CODES[f]:
            if code in set(df[f]):
                continue
            rows = df.assign(**{f: code})
            model_only, with_rules = called_edible(loaded, rows)
            pois = rows[rows[TARGET] == "p"]
            pm, pr = called_edible(loaded, pois)
            out.append({"part": "unseen", "cell": f"{f}={code}", "rows": len(rows), "edible_model": model_only,
                        "edible_rules": with_rules, "poisonous_called_edible_model": pm,
                        "poisonous_called_edible_rules": pr})
    return out


def families(df: pd.DataFrame, seed: int = 42) -> list[dict]:
    """Each (odor, spore-print-color) family with a poisonous member left out of training in turn."""
    out = []
    groups = df.groupby(["odor", "spore-print-color"])
    for (odor, spore), fam in groups:
        pois = fam[fam[TARGET] == "p"]
        if not len(pois):
            continue
        rest = df.drop(fam.index)
        train, _ = split(rest, seed)
        _, loaded = fitted(train, M.ModelConfig(seed=seed))
        model_only, with_rules = called_edible(loaded, pois)
        near = Scorer(loaded).score(pois[FEATURES].reset_index(drop=True))["nearest_known"]
        out.append({"part": "family", "family": f"odor={odor} spore-print-color={spore}", "rows": len(fam),
                    "poisonous": len(pois), "fe_model": model_only,
                    "fe_rules": with_rules, "nearest_min": int(near.min())})
    return out


def family_groups(df: pd.DataFrame, folds: int = 30, seed: int = 0, sizes: tuple[int, int] = (3, 6)) -> list[list]:
    """Per fold a random group of 3-6 (odor, spore-print-color) families holding at least one poisonous family."""
    pois = df.groupby(["odor", "spore-print-color"])[TARGET].agg(lambda s: bool((s == "p").any()))
    names = list(pois.index)
    out = []
    for fold in range(folds):
        rng = np.random.default_rng([seed, fold])
        while True:
            k = int(rng.integers(sizes[0], sizes[1] + 1))
            pick = [names[i] for i in sorted(rng.choice(len(names), size=k, replace=False))]
            if any(pois[n] for n in pick):
                out.append(pick)
                break
    return out


#: "without each rule" in the grouped folds: the rules left out of ``rules.decide`` (serving never skips one)
ABLATIONS = {"all rules": frozenset(), **{f"without {r}": frozenset({r}) for r in rules.RULES[1:6]},
             "last round's rules": frozenset({"pure_poisonous_code", "nearest_known_poisonous"})}


def grouped_fold(df: pd.DataFrame, families: list, fold: int) -> dict:
    """Leave the families out, fit on 80% of the rest as `mushroom train` does, score the left-out rows and the
    rest's holdout as `mushroom predict` does (``Scorer``): false_edible with all rules, without each one,
    with last round's only and by the model alone; accuracy and uncertain share on the holdout."""
    out = pd.MultiIndex.from_frame(df[["odor", "spore-print-color"]]).isin(families)
    left, rest = df[out], df[~out]
    seed = 1000 + fold
    train, hold = split(rest, seed)
    _, loaded = fitted(train, M.ModelConfig(seed=seed))
    rows = pd.concat([left, hold])
    p, ev, decision = Scorer(loaded).explain(feature_codes(rows[FEATURES]))
    y = M.to_binary(rows[TARGET])
    is_left = np.r_[np.ones(len(left), bool), np.zeros(len(hold), bool)]
    res = {"part": "grouped", "fold": fold, "families": " ".join(f"{o}{s}" for o, s in families),
           "left_poisonous": int(((y == 1) & is_left).sum()), "left_edible": int(((y == 0) & is_left).sum()),
           "threshold": loaded.threshold, "cutoff": loaded.known.cutoff}
    for name, skip in {**ABLATIONS, "model alone": None}.items():
        called = (p >= loaded.threshold) if skip is None else rules.decide(p, loaded.threshold, ev, skip=skip).called == 1
        res[f"fe_left[{name}]"] = int(((y == 1) & ~called & is_left).sum())
        res[f"fe_holdout[{name}]"] = int(((y == 1) & ~called & ~is_left).sum())
    called = decision.called == 1
    res.update(accuracy_holdout=float((called == (y == 1))[~is_left].mean()),
               uncertain_holdout=float(decision.uncertain[~is_left].mean()),
               edible_left_called_edible=int(((y == 0) & ~called & is_left).sum()),
               caught_left=rules.rule_counts(rules.Decision(*(a[is_left & (y == 1)] for a in (
                   decision.called, decision.uncertain, decision.reason, decision.rule))),
                   _rows(ev, is_left & (y == 1)), p[is_left & (y == 1)], loaded.threshold)["changed_call"])
    return res


def _rows(ev: rules.Evidence, mask: np.ndarray) -> rules.Evidence:
    return rules.Evidence(ev.unseen[mask], ev.conflict[mask], ev.nearest[mask], ev.near_poisonous[mask],
                          ev.pure[mask], ev.pure_rows[mask], ev.cutoff)


def grouped_table(df: pd.DataFrame, folds: int, show, as_json: bool) -> list[dict]:
    names = [*ABLATIONS, "model alone"]
    if not as_json:
        print(f"\n{'fold':>4} {'families left out':28} {'pois':>5} | FE left out (" + ", ".join(names) + ") | "
              f"{'FE hold':>7} {'acc hold':>8} {'unc%':>5} | thresh")
    rows = []
    for fold, fams in enumerate(family_groups(df, folds)):
        r = grouped_fold(df, fams, fold)
        rows.append(r)
        show(r, f"{fold:4d} {r['families']:28} {r['left_poisonous']:5d} | "
                + " ".join(f"{r[f'fe_left[{n}]']:4d}" for n in names)
                + f" | {r['fe_holdout[all rules]']:7d} {r['accuracy_holdout']:8.4f} "
                f"{100 * r['uncertain_holdout']:5.2f} | {r['threshold']:.4f}")
    if not as_json:
        print(f"  {len(rows)} folds, {sum(r['left_poisonous'] for r in rows)} poisonous rows left out; "
              "false_edible on the left-out rows / on the rest's holdouts:")
        for n in names:
            print(f"    {n:36} {sum(r[f'fe_left[{n}]'] for r in rows):6d} / "
                  f"{sum(r[f'fe_holdout[{n}]'] for r in rows):4d}")
        caught = {k: sum(r["caught_left"][k] for r in rows) for k in rows[0]["caught_left"]}
        print(f"  left-out poisonous rows the model alone calls edible, caught by: {caught}")
        print(f"  holdout accuracy min {min(r['accuracy_holdout'] for r in rows):.4f}, median "
              f"{statistics.median(r['accuracy_holdout'] for r in rows):.4f}; uncertain share max "
              f"{100 * max(r['uncertain_holdout'] for r in rows):.2f}%; left-out edible rows called edible "
              f"{sum(r['edible_left_called_edible'] for r in rows)} of {sum(r['left_edible'] for r in rows)}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["seeds", "random", "unseen", "families", "grouped"],
                    choices=["seeds", "random", "unseen", "families", "grouped"])
    ap.add_argument("--folds", type=int, default=30, help="grouped folds (default 30)")
    ap.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    ap.add_argument("--configs", nargs="+", default=["default"], choices=list(CONFIGS))
    ap.add_argument("--json", action="store_true", help="print the rows as JSON lines instead of tables")
    args = ap.parse_args(argv)
    df = dataset()

    def show(row: dict, text: str) -> None:
        print(json.dumps(row) if args.json else text, flush=True)

    if "seeds" in args.parts:
        rows = []
        if not args.json:
            print(f"{'config':22} {'seed':>5} {'thresh':>7} | {'FE':>3} {'acc':>7} {'FP':>3} {'unc%':>5} | "
                  f"{'FEmod':>5} {'accMod':>7} | {'fit s':>6}")
        for name in args.configs:
            for seed in args.seeds:
                r = one(df, seed, name, CONFIGS[name])
                rows.append(r)
                show(r, f"{name:22} {seed:5d} {r['threshold']:7.4f} | {r['false_edible']:3d} {r['accuracy']:7.4f} "
                        f"{r['false_poisonous']:3d} {100 * r['uncertain_share']:5.2f} | {r['false_edible_model']:5d} "
                        f"{r['accuracy_model']:7.4f} | {r['fit_seconds']:6.1f}")
        if not args.json:
            for name in args.configs:
                mine = [r for r in rows if r["config"] == name]
                worst = min(mine, key=lambda r: r["accuracy"])
                print(f"  {name}: false_edible total {sum(r['false_edible'] for r in mine)}; worst seed "
                      f"{worst['seed']} accuracy {worst['accuracy']:.4f}; median accuracy "
                      f"{statistics.median(r['accuracy'] for r in mine):.4f}")
    if {"random", "unseen"} & set(args.parts):
        train, _ = split(df, 42)
        _, loaded = fitted(train, M.ModelConfig(seed=42))
        if "random" in args.parts:
            r = random_rows(df, loaded)
            show(r, f"\nrandom rows: {r['rows']}; called edible by the model alone {r['edible_model']}, with the "
                    f"rules {r['edible_rules']}; nearest known mushroom at least {r['nearest_known_min']} features away")
        if "unseen" in args.parts:
            if not args.json:
                print(f"\n{'unseen code':26} {'edible model':>12} {'rules':>6} | {'poisonous->edible model':>23} {'rules':>6}")
            for r in unseen_codes(df, loaded):
                show(r, f"{r['cell']:26} {r['edible_model']:12d} {r['edible_rules']:6d} | "
                        f"{r['poisonous_called_edible_model']:23d} {r['poisonous_called_edible_rules']:6d}")
    if "families" in args.parts:
        if not args.json:
            print(f"\n{'family left out':36} {'rows':>5} {'pois':>5} | {'FE model':>8} {'FE rules':>8} | nearest")
        total = [0, 0, 0]
        for r in families(df):
            total = [total[0] + r["poisonous"], total[1] + r["fe_model"], total[2] + r["fe_rules"]]
            show(r, f"{r['family']:36} {r['rows']:5d} {r['poisonous']:5d} | {r['fe_model']:8d} {r['fe_rules']:8d} | "
                    f"{r['nearest_min']}")
        if not args.json:
            print(f"{'total':36} {'':5} {total[0]:5d} | {total[1]:8d} {total[2]:8d} |")
    if "grouped" in args.parts:
        grouped_table(df, args.folds, show, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
