"""Feedback review (issue 15): ids, sources, exclusions with an audit trail, through the CLI and the library."""

from __future__ import annotations

import csv
import json
import os

import pandas as pd
import pytest
from helpers import run

from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.dataset import frame_sha256, load_split
from mushroom_lib.data.schema import FEATURES, TARGET
from mushroom_lib.feedback.store import OLD_COLUMNS, PROD_COLUMNS
from mushroom_lib.registry.versions import Registry
from mushroom_lib.service import ModelService
from mushroom_lib.training.train import train


def mushroom(home, *args, k=None):
    """The `mushroom` command on ``home`` (helpers.run), with K set when given."""
    return run("--home", str(home), *args, env_extra=None if k is None else {"MUSHROOM_K": str(k)})


def prod_rows(home) -> list[list[str]]:
    with open(home / "data" / "prod_data.csv", newline="") as fh:
        return list(csv.reader(fh))


def test_mallory_and_alice_end_to_end(trained_home, tmp_path):
    """The issue's sequence: mallory's wrong labels are excluded, the retrain leaves them out, all is logged."""
    s = get_settings(trained_home)
    train_split, _ = load_split(s)
    poisonous = train_split[train_split[TARGET] == "p"].sample(10, random_state=1)
    mallory = poisonous.assign(**{TARGET: "e"})  # deadly mushrooms called edible
    alice = train_split.drop(poisonous.index).sample(10, random_state=2)  # right labels
    for name, rows in (("mallory", mallory), ("alice", alice)):
        path = tmp_path / f"{name}.csv"
        rows.to_csv(path, index=False)
        res = mushroom(trained_home, "feedback", str(path), "--source", name, k=50)  # the bare shortcut
        assert res.returncode == 0, res.stderr
    before = json.loads(mushroom(trained_home, "status", "--json", k=50).stdout)
    assert before["feedback_sources"] == {"mallory": 10, "alice": 10} and before["rows_until_retrain"] == 30

    res = mushroom(trained_home, "feedback", "exclude", "--source", "mallory", "--reason", "labels were guesses",
                   k=50)
    assert res.returncode == 0, res.stderr
    assert "excluded 10 feedback row(s)" in res.stdout
    after = json.loads(mushroom(trained_home, "status", "--json", k=50).stdout)
    assert after["feedback_excluded"] == 10 and after["rows_until_retrain"] == 40  # K counts alice's rows only

    listed = json.loads(mushroom(trained_home, "feedback", "list", "--source", "mallory", "--json").stdout)
    assert [r["feedback_id"] for r in listed] == list(range(1, 11))
    assert all(r["excluded"] and r["excluded_reason"] == "labels were guesses" and r["contradicts"] for r in listed)
    assert all(r["excluded_by"] and r["excluded_at"] for r in listed)
    alice_listed = json.loads(mushroom(trained_home, "feedback", "list", "--source", "alice", "--json").stdout)
    assert [r["excluded"] for r in alice_listed] == [False] * 10

    res = mushroom(trained_home, "feedback", "include", "3", k=50)  # undo one, then redo it
    assert res.returncode == 0, res.stderr
    assert json.loads(mushroom(trained_home, "status", "--json", k=50).stdout)["feedback_excluded"] == 9
    res = mushroom(trained_home, "feedback", "exclude", "3", "--reason", "labels were guesses", "--retrain", k=50)
    assert res.returncode == 0, res.stderr
    receipt = json.loads(res.stdout[res.stdout.index("{"):])
    assert receipt["retrained"] and receipt["candidate_version"] == "v0002"

    meta = Registry(s).metadata("v0002")
    assert meta["feedback_excluded"] == 10 and meta["feedback_rows"] == 10
    trained_on = pd.concat([train_split, alice[[TARGET, *FEATURES]]], ignore_index=True)
    assert meta["training_sha256"] == frame_sha256(trained_on)  # exactly the split + alice's rows
    assert len(prod_rows(trained_home)) == 21  # prod_data.csv still holds all 20 rows (+ header)
    log = (trained_home / "data" / "prod_data.exclusions.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"] for line in log] == ["exclude", "include", "exclude"]
    st = mushroom(trained_home, "status", k=50).stdout
    assert "20 rows (10 excluded)" in st and "alice 10, mallory 10" in st


@pytest.mark.parametrize("args, words", [
    (("exclude", "999", "--reason", "typo"), "no feedback row with id 999"),
    (("exclude", "1", "x7", "--reason", "typo"), "'x7' is not a feedback id"),
    (("exclude", "--source", "nobody", "--reason", "typo"), "no feedback rows from source 'nobody'"),
    (("exclude", "--source", "alice", "--since", "2999-01-01", "--reason", "x"), "since 2999-01-01"),
    (("exclude", "1", "2"), "needs a reason"),
    (("exclude", "1", "--reason", "   "), "needs a reason"),
    (("exclude", "--reason", "why"), "name the rows"),
    (("include", "2"), "row 2 is not excluded"),
    (("list", "--since", "yesterday-ish"), "is not a time"),
])
def test_bad_review_requests_exit_2_and_write_nothing(trained_home, tmp_path, args, words):
    svc = ModelService(trained_home)
    svc.submit_feedback(pd.read_csv(trained_home / "data" / "mushrooms.csv", dtype=str).head(3), source="alice")
    log = trained_home / "data" / "prod_data.exclusions.jsonl"
    prod = (trained_home / "data" / "prod_data.csv").read_bytes()
    res = mushroom(trained_home, "feedback", *args)
    assert res.returncode == 2, res.stderr
    assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not log.exists() and (trained_home / "data" / "prod_data.csv").read_bytes() == prod


def test_library_review_and_sources(trained_home):
    svc = ModelService(trained_home, k=100)
    data = pd.read_csv(trained_home / "data" / "mushrooms.csv", dtype=str)
    first = svc.submit_feedback(data.iloc[:4], source="dashboard")
    second = svc.submit_feedback(data.iloc[4:6], source="notebook")
    assert first.feedback_ids == [1, 2, 3, 4] and second.to_dict()["feedback_ids"] == [5, 6]  # the receipt's ids
    rows = svc.feedback.list()
    assert rows["feedback_id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert rows["source"].tolist() == ["dashboard"] * 4 + ["notebook"] * 2
    event = svc.feedback.exclude([5, 6], reason="test batch")
    assert event["ids"] == [5, 6] and event["who"]
    assert svc.feedback.list(excluded=True)["feedback_id"].tolist() == [5, 6]
    assert svc.store.read()["feedback_id"].tolist() == [1, 2, 3, 4]  # what training and reports see
    assert len(svc.store.read(include_excluded=True)) == 6
    st = svc.status()
    assert st["feedback_sources"] == {"dashboard": 4, "notebook": 2} and st["feedback_excluded"] == 2
    assert st["rows_until_retrain"] == 96
    svc.feedback.include([6])
    assert svc.status()["rows_until_retrain"] == 95


def test_old_home_is_upgraded_in_place_once(trained_home):
    """A prod_data.csv without feedback ids (and a registry that counted rows) keeps working."""
    s = get_settings(trained_home)
    data = pd.read_csv(s.dataset_path, dtype=str, keep_default_na=False).iloc[200:213]
    lines = [",".join(OLD_COLUMNS)]
    for i, row in enumerate(data.itertuples(index=False)):
        feats = list(row)[1:]
        lines.append(",".join([*feats, "edible" if row[0] == "e" else "poisonous", "edible", "0.100000", "v0001",
                               f"2026-01-01T00:00:{i:02d}.000Z", "old"]))
    s.prod_path.write_text("\n".join(lines) + "\n")
    old = pd.read_csv(s.prod_path, dtype=str, keep_default_na=False)
    train(s, trigger="feedback", feedback=old.iloc[:10])  # the old loop's retrain after 10 rows: v0002
    assert "loop_state.json" not in os.listdir(s.artifacts_dir)

    st = json.loads(mushroom(trained_home, "status", "--json").stdout)
    assert st["feedback_rows"] == 13 and st["rows_until_retrain"] == 7  # 3 rows since v0002's 10
    recs = prod_rows(trained_home)
    assert recs[0] == PROD_COLUMNS and [r[-1] for r in recs[1:]] == [str(i) for i in range(1, 14)]
    assert [r[:-1] for r in recs[1:]] == old.values.tolist()  # nothing else changed
    inode = s.prod_path.stat().st_ino
    svc = ModelService(trained_home)
    svc.submit_feedback(pd.read_csv(s.dataset_path, dtype=str).iloc[[300]], source="new")
    assert s.prod_path.stat().st_ino == inode  # appended, not rewritten again
    assert svc.feedback.list()["feedback_id"].tolist() == list(range(1, 15))
    assert svc.status()["rows_until_retrain"] == 6


def test_hand_edited_file_is_summarised_again(trained_home):
    svc = ModelService(trained_home, k=100)
    data = pd.read_csv(trained_home / "data" / "mushrooms.csv", dtype=str)
    svc.submit_feedback(data.iloc[:5], source="a")
    assert svc.status()["feedback_rows"] == 5
    path = trained_home / "data" / "prod_data.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:1] + lines[2:]))  # someone deletes row 1 by hand
    st = svc.status()
    assert st["feedback_rows"] == 4 and st["feedback_sources"] == {"a": 4}
    svc.submit_feedback(data.iloc[[9]], source="b")
    assert svc.feedback.list()["feedback_id"].tolist() == [2, 3, 4, 5, 6]  # ids stay stable, never reused
