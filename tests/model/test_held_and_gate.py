"""Labels a person confirms: which feedback rows are held (``rules.held_reasons`` on the real data), and the gate
that refuses an accuracy fall coming from confirmed contradicting rows unless a reviewer accepts it."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from helpers import run
from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.dataset import load_split
from mushroom_lib.data.schema import FEATURES, TARGET
from mushroom_lib.model import pipeline as M
from mushroom_lib.model import rules
from mushroom_lib.model.known import LabelTable, _masked
from mushroom_lib.registry.versions import Registry
from mushroom_lib.scoring.scorer import feature_codes
from mushroom_lib.training import train as training


def dataset(home) -> pd.DataFrame:
    return pd.read_csv(home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)


def held(home, rows: pd.DataFrame, labels) -> np.ndarray:
    s = get_settings(home)
    known = Registry(s).load("v0001").known
    df = dataset(home)
    table = LabelTable(feature_codes(df[FEATURES]), M.to_binary(df[TARGET]))
    return rules.held_reasons(feature_codes(rows[FEATURES]), M.to_binary(labels), table, known)


def test_twelve_flipped_labels_are_held_and_correct_ones_are_not(trained_home):
    df = dataset(trained_home)
    rows = df.sample(12, random_state=0)
    flipped = rows[TARGET].map({"e": "p", "p": "e"})
    out = held(trained_home, rows, flipped)
    assert all(r.startswith("held: the dataset calls this mushroom ") for r in out), out
    assert not held(trained_home, df.sample(500, random_state=1), df.sample(500, random_state=1)[TARGET]).any()


def test_an_edible_label_the_rules_overrule_is_held(trained_home):
    df = dataset(trained_home)
    green = df[(df[TARGET] == "e") & (df["odor"] == "n")].head(5).assign(**{"spore-print-color": "r"})
    out = held(trained_home, green, ["e"] * len(green))
    assert all(r.startswith("held: labelled edible, but ") for r in out), out
    assert any("spore-print-color=r (green) is poisonous" in r for r in out)
    assert not held(trained_home, green, ["p"] * len(green)).any()  # calling it poisonous is never held


def sole_neighbours(home, limit: int = 12) -> pd.DataFrame:
    """Edible training rows that are the only known mushrooms 1 feature from some edible holdout row (fewest
    neighbours first): flipped to poisonous they become conflicting reports, are kept out of training, and those
    holdout rows are left unlike every known mushroom (poisonous): the candidate's accuracy falls."""
    train, hold = load_split(get_settings(home))
    where = defaultdict(list)
    for i, row in enumerate(_masked(feature_codes(train[FEATURES]))):
        for key in row.tolist():
            where[key].append(i)
    groups = []
    for h, row in enumerate(_masked(feature_codes(hold[FEATURES]))):
        if hold[TARGET].iloc[h] == "e":
            groups.append(sorted({i for key in row.tolist() for i in where.get(key, [])}))
    pick: list[int] = []
    for group in sorted(groups, key=len):
        if len(pick) + len(group) > limit:
            break
        pick += [i for i in group if i not in pick]
    assert pick and (train[TARGET].iloc[pick] == "e").all()
    return train.iloc[pick][FEATURES].assign(target="poisonous")


def test_a_fall_from_confirmed_contradicting_rows_is_refused_unless_accepted(trained_home):
    s = get_settings(trained_home)
    flipped = sole_neighbours(trained_home)
    res = training.train(s, feedback=flipped, write_ref=False)
    assert not res.promoted
    assert res.metrics["accuracy"] < res.previous_metrics["accuracy"]
    assert res.previous_metrics["accuracy"] - res.metrics["accuracy"] < s.accuracy_margin  # within the old margin
    assert f"because of {len(flipped)} confirmed feedback row(s) that contradict" in res.reason
    gate = Registry(s).record(res.version)["gate"]
    assert gate["confirmed_contradicting_rows"] == len(flipped) and gate["accuracy_without_contradicting_rows"] > \
        res.metrics["accuracy"]
    accepted = training.train(s, feedback=flipped, write_ref=False, accept_lower=True)
    assert accepted.promoted, accepted.reason
    assert Registry(s).record(accepted.version)["gate"]["accept_lower"] is True


def test_the_gate_never_accepts_more_false_edible(trained_home):
    from mushroom_lib.training.evaluate import Champion, GateInput, gate

    champ = Champion("v0001", {"false_edible": 0, "accuracy": 1.0})
    worse = {"false_edible": 1, "accuracy": 1.0}
    assert "false_edible would rise" in gate(GateInput(worse, champ, 0.005, accept_lower=True))
    lost = Champion("v0001", note="the champion v0001 was not compared: it does not load (damaged)")
    assert "cannot be compared" in gate(GateInput(worse, lost, 0.005))
    assert gate(GateInput({"false_edible": 0, "accuracy": 0.99}, lost, 0.005)) is None


@pytest.mark.slow
def test_accept_lower_on_the_command_line(trained_home, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSHROOM_K", "1000")  # the rows are stored, not retrained on at once
    flipped = sole_neighbours(trained_home).rename(columns={"target": "class"})
    src = tmp_path / "flipped.csv"
    flipped.to_csv(src, index=False)
    home = ("--home", str(trained_home))
    assert run(*home, "feedback", str(src)).returncode == 0
    refused = run(*home, "train")
    assert refused.returncode == 1 and "mushroom train --accept-lower" in refused.stdout, refused.stdout
    accepted = run(*home, "train", "--accept-lower")
    assert accepted.returncode == 0 and "(champion)" in accepted.stdout, accepted.stdout + accepted.stderr
