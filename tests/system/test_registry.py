"""The registry: crash safety of versions and the champion pointer, tamper and type checks, models CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli_env as _env
from helpers import one_error_line, run
from sklearn.preprocessing import FunctionTransformer

from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.dataset import synthetic_frame
from mushroom_lib.data.schema import FEATURES, TARGET
from mushroom_lib.model import pipeline as M
from mushroom_lib.registry import versions as R
from mushroom_lib.registry.versions import Registry, RegistryError
from mushroom_lib.service import ModelService


def query_rows(home: Path, n: int = 5):
    import pandas as pd

    df = pd.read_csv(home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)
    return df[FEATURES].head(n)


def small_pipeline(cfg: M.ModelConfig | None = None, seed: int = 0):
    """A quickly fitted pipeline on synthetic rows (stands in for a retrained version)."""
    cfg = cfg or M.ModelConfig()
    df = synthetic_frame(300, seed)
    return M.build_pipeline(cfg).fit(df[FEATURES], M.to_binary(df[TARGET])), cfg


def register_small(reg: Registry, *, parent: str | None, obj=None, status: str = "candidate") -> str:
    from mushroom_lib.training.train import distinct_rows, known_set

    pipe, cfg = small_pipeline() if obj is None else (obj, M.ModelConfig())
    metrics = {"accuracy": 0.9, "precision": 0.9, "recall": 0.9, "f1": 0.9, "false_edible": 1}
    rows, conflicts = distinct_rows(synthetic_frame(300, 0))
    return reg.register(pipe, threshold=0.4, trigger="manual", params=cfg.to_dict(), metrics=metrics,
                        training_rows=300, training_sha256="0" * 64, parent=parent, status=status,
                        known=known_set(rows, conflicts, rows))


# ---------------------------------------------------------------- crash safety
_CRASH_AT_POINTER = r"""
import os, sys
import mushroom_lib.core.fileio as fileio
real_replace = os.replace
def replace(src, dst, *a, **k):
    if str(dst).endswith("champion.json"):
        os._exit(137)  # the process dies: no cleanup, no finally, no atexit
    return real_replace(src, dst, *a, **k)
fileio.os = type(sys)("os_with_crash")
fileio.os.__dict__.update(os.__dict__)
fileio.os.replace = replace
from mushroom_lib.cli.commands import main
sys.exit(main(["--home", sys.argv[1], "train", "--force"]))
"""


def test_crash_between_model_and_pointer_keeps_the_old_champion(trained_home):
    """A training killed after writing v0002 but before moving the pointer: v0001 still serves."""
    proc = subprocess.run([sys.executable, "-c", _CRASH_AT_POINTER, str(trained_home)], env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 137, proc.stderr
    s = get_settings(trained_home)
    reg = Registry(s)
    assert reg.versions() == ["v0001", "v0002"]            # the model was written whole...
    assert reg.metadata("v0002")["status"] == "candidate"  # ...but never promoted
    assert json.loads(s.champion_path.read_text())["version"] == "v0001"
    assert reg.load("v0001").version == "v0001"
    out = ModelService(trained_home).predict(query_rows(trained_home))
    assert set(out["model_version"]) == {"v0001"}
    listing = run("--home", str(trained_home), "models", "list")
    assert listing.returncode == 0 and "v0001*" in listing.stdout
    # and the next training carries on normally
    from mushroom_lib.training.train import train

    res = train(s)
    assert res.version == "v0003" and res.promoted and reg.champion() == "v0003"


def test_pointer_write_failure_in_process_keeps_serving(trained_home, monkeypatch):
    s = get_settings(trained_home)
    reg = Registry(s)
    svc = ModelService(trained_home)
    assert svc.model_version == "v0001"
    v2 = register_small(reg, parent="v0001")
    real = R.atomic_write_json

    def failing(path, obj):
        if Path(path) == s.champion_path:
            raise OSError("disk full while replacing champion.json")
        return real(path, obj)

    monkeypatch.setattr(R, "atomic_write_json", failing)
    with pytest.raises(OSError, match="disk full"):
        reg.promote(v2)
    monkeypatch.undo()
    assert reg.champion() == "v0001"
    assert set(svc.predict(query_rows(trained_home))["model_version"]) == {"v0001"}
    assert ModelService(trained_home).model_version == "v0001"


def test_crash_while_writing_a_version_leaves_no_half_version(trained_home, monkeypatch):
    s = get_settings(trained_home)
    reg = Registry(s)

    def crash(src, dst):
        raise OSError("killed during the rename")

    monkeypatch.setattr(R.os, "rename", crash)
    with pytest.raises(OSError):
        register_small(reg, parent="v0001")
    monkeypatch.undo()
    assert reg.versions() == ["v0001"] and reg.champion() == "v0001"
    assert list(s.models_dir.glob(".tmp-*"))  # the half-built folder is invisible...
    assert register_small(reg, parent="v0001") == "v0002"
    assert not list(s.models_dir.glob(".tmp-*"))  # ...and cleaned up by the next registration


# ---------------------------------------------------------------- tamper and type checks
def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_model_is_refused_and_the_previous_champion_keeps_serving(trained_home):
    s = get_settings(trained_home)
    reg = Registry(s)
    svc = ModelService(trained_home)
    assert svc.model_version == "v0001"
    v2 = register_small(reg, parent="v0001")
    reg.promote(v2)  # verified and promoted...
    _tamper(s.models_dir / v2 / "model.skops")  # ...then changed on disk before the service looks
    out = svc.predict(query_rows(trained_home))
    assert set(out["model_version"]) == {"v0001"} and svc.model_version == "v0001"
    assert "sha256" in svc.status()["load_error"]
    with pytest.raises(RegistryError, match="sha256.*refusing"):
        reg.load(v2)
    # a fresh process has no previous model in memory: it says why instead of serving
    res = run("--home", str(trained_home), "predict", str(_write_query(trained_home)))
    line = one_error_line(res)
    assert v2 in line and "sha256" in line and res.stdout == ""


def _write_query(home: Path) -> Path:
    path = home / "query.csv"
    query_rows(home).to_csv(path, index=False)
    return path


def test_promoting_a_tampered_version_is_refused(trained_home):
    s = get_settings(trained_home)
    reg = Registry(s)
    v2 = register_small(reg, parent="v0001")
    _tamper(s.models_dir / v2 / "model.skops")
    res = run("--home", str(trained_home), "models", "promote", v2)
    assert "sha256" in one_error_line(res)
    assert reg.champion() == "v0001"
    assert reg.metadata(v2)["status"] == "candidate"


def test_untrusted_type_is_refused(trained_home):
    """A model file that would call os.system is refused even when its sha256 matches."""
    s = get_settings(trained_home)
    reg = Registry(s)
    svc = ModelService(trained_home)
    evil = register_small(reg, parent="v0001", obj=FunctionTransformer(func=os.system))
    with pytest.raises(RegistryError, match=r"untrusted type.*system"):
        reg.load(evil)
    with pytest.raises(RegistryError, match="untrusted"):
        reg.promote(evil)
    res = run("--home", str(trained_home), "models", "promote", evil)
    assert "untrusted" in one_error_line(res)
    assert reg.champion() == "v0001"
    # even if someone points champion.json at it by hand, the running service keeps its model
    s.champion_path.write_text(json.dumps({"version": evil}))
    assert set(svc.predict(query_rows(trained_home))["model_version"]) == {"v0001"}
    assert "untrusted" in svc.status()["load_error"]


@pytest.mark.parametrize("encoder", ["target", "onehot", "ordinal"])
@pytest.mark.parametrize("classifier", ["knn", "extra_trees", "random_forest"])
def test_every_supported_pipeline_round_trips(home, encoder, classifier):
    """The trusted-type list covers every pipeline the project can train."""
    reg = Registry(get_settings(home))
    cfg = M.ModelConfig(encoder=encoder, classifier=classifier, n_estimators=5)
    pipe, _ = small_pipeline(cfg)
    name = register_small(reg, parent=None, obj=pipe)
    loaded = reg.load(name)
    rows = synthetic_frame(50, seed=9)
    assert (M.p_poisonous(loaded.pipeline, rows) == M.p_poisonous(pipe, rows)).all()


def test_damaged_pointer_is_named_and_promote_repairs_it(trained_home):
    s = get_settings(trained_home)
    s.champion_path.write_text('{"version": "v00')  # edited by hand and cut short
    line = one_error_line(run("--home", str(trained_home), "predict", str(_write_query(trained_home))))
    assert "champion.json" in line and "models promote" in line
    res = run("--home", str(trained_home), "models", "promote", "v0001")
    assert res.returncode == 0, res.stderr
    assert ModelService(trained_home).predict(query_rows(trained_home))["model_version"][0] == "v0001"


# ---------------------------------------------------------------- models list | promote | rollback
def test_models_list_promote_rollback(trained_home):
    s = get_settings(trained_home)
    reg = Registry(s)
    v2 = register_small(reg, parent="v0001")
    listing = run("--home", str(trained_home), "models", "list")
    assert listing.returncode == 0, listing.stderr
    lines = {ln.split()[0]: ln for ln in listing.stdout.splitlines()[1:]}
    assert set(lines) == {"v0001*", "v0002"}
    assert "champion" in lines["v0001*"] and "initial" in lines["v0001*"]
    assert "candidate" in lines["v0002"] and "manual" in lines["v0002"]

    res = run("--home", str(trained_home), "models", "promote", v2)
    assert res.returncode == 0 and f"champion is now {v2}" in res.stdout
    assert reg.champion() == v2
    assert reg.metadata("v0001")["status"] == "retired" and reg.metadata(v2)["status"] == "champion"
    assert "v0002*" in run("--home", str(trained_home), "models", "list").stdout

    res = run("--home", str(trained_home), "models", "rollback")
    assert res.returncode == 0 and "champion is now v0001" in res.stdout
    assert reg.champion() == "v0001" and json.loads(s.champion_path.read_text())["previous"] == v2

    from concurrent.futures import ThreadPoolExecutor

    refusals = {"no parent": ["rollback"], "v0099": ["promote", "v0099"], "needs a version": ["promote"]}
    with ThreadPoolExecutor(3) as pool:
        results = pool.map(lambda a: run("--home", str(trained_home), "models", *a), refusals.values())
        for expected, res in zip(refusals, results):
            assert expected in one_error_line(res)
    assert reg.champion() == "v0001"


def test_models_list_in_an_empty_home(home):
    res = run("--home", str(home), "models", "list")
    assert res.returncode == 0 and "no models" in res.stdout
    assert "no champion" in one_error_line(run("--home", str(home), "models", "rollback"))
