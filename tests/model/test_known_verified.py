"""The rules' data is checked like the model: a damaged or changed known.npz refuses its version, with the
sentence of a tampered model file, whether or not the scoring plan exists in artifacts/cache, and a retrain
from it neither fails nor trusts it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from helpers import run
from mushroom_lib.core.errors import NoChampionError
from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.schema import FEATURES
from mushroom_lib.registry.versions import Registry, RegistryError
from mushroom_lib.service import ModelService
from mushroom_lib.training import train as training

TAMPERED = "known.npz does not match the sha256 in its record (the file was changed after registration); " \
           "refusing to load it"


def truncate(path, size=50):
    data = path.read_bytes()
    path.write_bytes(data[:size])


def relabel(path):
    """A valid known.npz whose labels say every known mushroom is edible."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["known_labels"] = np.zeros_like(arrays["known_labels"])
    np.savez(path, **arrays)


@pytest.mark.parametrize("damage", [truncate, relabel], ids=["truncated", "relabelled"])
@pytest.mark.parametrize("plan", [True, False], ids=["with plan", "without plan"])
def test_a_damaged_known_set_refuses_its_version(trained_home, damage, plan):
    s = get_settings(trained_home)
    damage(s.models_dir / "v0001" / "known.npz")
    if not plan:
        shutil.rmtree(s.artifacts_dir / "cache")
    with pytest.raises(RegistryError, match="v0001: " + TAMPERED.replace("(", r"\(").replace(")", r"\)")):
        Registry(s).load("v0001")
    with pytest.raises(NoChampionError, match="refusing to load it"):
        ModelService(trained_home).predict({f: "x" for f in FEATURES})
    src = trained_home / "data" / "mushrooms.csv"
    res = run("--home", str(trained_home), "predict", str(src), "-o", str(trained_home / "out.csv"))
    assert res.returncode != 0 and TAMPERED in res.stderr and "BadZipFile" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (trained_home / "out.csv").exists()


def test_the_sentence_is_the_one_of_a_tampered_model(trained_home):
    s = get_settings(trained_home)
    with open(s.models_dir / "v0001" / "model.skops", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(RegistryError) as model:
        Registry(s).load("v0001")
    assert str(model.value).endswith("(the file was changed after registration); refusing to load it")
    assert "model.skops does not match the sha256" in str(model.value)


def test_a_retrain_from_a_damaged_champion_does_not_trust_it(trained_home):
    s = get_settings(trained_home)
    truncate(s.models_dir / "v0001" / "known.npz")
    res = training.train(s, write_ref=False)
    assert res.previous_metrics is None  # the champion was not compared, and not used
    rec = Registry(s).record(res.version)
    assert TAMPERED in rec["champion_rescored"]["note"]
    assert res.promoted and res.metrics["false_edible"] == 0  # a candidate that cannot be compared needs 0
